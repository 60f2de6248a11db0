"""The demo's person: a scripted browser that logs in and approves on real HTML pages.

It reads the forms the servers render (hidden fields such as the CSRF token included),
fills in what a person would type, presses the button a person would press, and follows
same-origin redirects, all through the same egress-admitted HTTPS as everyone else. It
is deliberately dumb: if a page changes so that a person could not use it, the demo fails.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import httpx
from attrs import define, field

__all__ = ["Form", "read_forms", "Browser"]

MAX_REDIRECTS = 5


@define
class Form:
    action: str
    method: str
    fields: dict[str, str] = field(factory=dict)
    buttons: list[tuple[str, str]] = field(factory=list)  # (name, value) of submit buttons


class _FormReader(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append(
                Form(action=named.get("action", ""), method=named.get("method", "get"))
            )
        elif tag == "input" and self.forms and named.get("name"):
            self.forms[-1].fields[named["name"]] = named.get("value", "")
        elif tag == "button" and self.forms and named.get("name"):
            self.forms[-1].buttons.append((named["name"], named.get("value", "")))

    def handle_data(self, data: str) -> None:
        if data.strip():
            self.text.append(data.strip())


def read_forms(html: str) -> tuple[list[Form], str]:
    """The forms on a page and its visible text."""
    reader = _FormReader()
    reader.feed(html)
    return reader.forms, " ".join(reader.text)


class Browser:
    """One person's browser: a cookie jar over an egress-admitted client."""

    def __init__(
        self,
        http: httpx.Client,
        *,
        logins: Mapping[str, tuple[str, str]],
        report: Callable[[str], None],
    ) -> None:
        self._http = http
        self._logins = dict(logins)  # origin → (person id, password)
        self._report = report
        self._lock = threading.Lock()
        self.pages: list[str] = []  # the visible text of every page shown

    def _get(self, url: str) -> tuple[str, httpx.Response]:
        for _ in range(MAX_REDIRECTS):
            response = self._http.get(url)
            if response.status_code in (301, 302, 303, 307, 308):
                target = urljoin(url, response.headers["location"])
                if urlsplit(target).netloc != urlsplit(url).netloc:
                    raise RuntimeError(f"refusing a redirect to another host: {target}")
                url = target
                continue
            return url, response
        raise RuntimeError(f"too many redirects from {url}")

    def _submit(
        self, page_url: str, form: Form, values: Mapping[str, str]
    ) -> tuple[str, httpx.Response]:
        target = urljoin(page_url, form.action or page_url)
        origin = "{0.scheme}://{0.netloc}".format(urlsplit(target))
        data = {**form.fields, **values}
        response = self._http.post(target, data=data, headers={"Origin": origin})
        if response.status_code in (301, 302, 303):
            follow = urljoin(target, response.headers["location"])
            if urlsplit(follow).netloc != urlsplit(target).netloc:
                raise RuntimeError(f"refusing a redirect to another host: {follow}")
            return self._get(follow)
        return target, response

    def _page(self, url: str, response: httpx.Response) -> tuple[list[Form], str]:
        if response.status_code >= 400:
            raise RuntimeError(f"{url} answered {response.status_code}: {response.text[:200]}")
        forms, text = read_forms(response.text)
        self.pages.append(text)
        return forms, text

    def _log_in_if_asked(self, url: str, response: httpx.Response) -> tuple[str, httpx.Response]:
        forms, _ = self._page(url, response)
        login = next((f for f in forms if "password" in f.fields), None)
        if login is None:
            return url, response
        origin = "{0.scheme}://{0.netloc}".format(urlsplit(url))
        person, password = self._logins[origin]
        self._report(f"person: logs in at {origin} as {person}")
        return self._submit(url, login, {"person": person, "password": password})

    def approve(self, url: str, code: str | None, *, choice: str = "approve") -> str:
        """Open the interaction ``url`` (entering ``code`` if asked), and press ``choice`` on
        the consent page. Returns the visible text of the consent page."""
        with self._lock:
            self._report(f"person: opens {url.split('?')[0]}")
            page_url, response = self._get(url)
            page_url, response = self._log_in_if_asked(page_url, response)
            forms, text = self._page(page_url, response)
            decision = _form_with(forms, "decision")
            if decision is None:  # a code form first
                form = next((f for f in forms if "code" in f.fields), None)
                if form is None or code is None:
                    raise RuntimeError(f"no code form at {page_url}: {text[:200]}")
                self._report("person: enters the code the agent showed")
                page_url, response = self._submit(page_url, form, {"code": code})
                forms, text = self._page(page_url, response)
                decision = _form_with(forms, "decision")
            if decision is None:
                raise RuntimeError(f"no consent form at {page_url}: {text[:200]}")
            empty_code = "code" in decision.fields and not decision.fields["code"]
            extra = {"code": code} if code is not None and empty_code else {}
            self._report(f"person: sees the consent page and presses {choice!r}")
            _, answer = self._submit(page_url, decision, {"decision": choice, **extra})
            if answer.status_code >= 400:
                raise RuntimeError(
                    f"the decision was refused: {answer.status_code} {answer.text[:200]}"
                )
            return text


def _form_with(forms: list[Form], button: str) -> Form | None:
    return next((f for f in forms if any(name == button for name, _ in f.buttons)), None)
