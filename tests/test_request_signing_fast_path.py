"""``sign_aauth_request``'s lean path for the common request gives the same fields, byte
for byte, as the general path (forced by naming the components), and the memo of the
``Signature-Key`` member never serves a member for another token or label."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from signing_helpers import generated_ed25519

from aauth_core.errors import AAuthError
from aauth_core.http import HttpRequest
from aauth_core.httpsig.sign import AAUTH_COMPONENTS
from aauth_core.requests import sign_aauth_request
from aauth_core.signature_key import serialize_jwt_scheme

SIGNER = generated_ed25519()  # Ed25519 is deterministic: same base, same signature
TOKEN = "eyJhbGciOiJFZDI1NTE5In0.eyJpc3MiOiJodHRwczovL2EuZXhhbXBsZSJ9.c2ln"

paths = st.text(alphabet="abcxyz/%-_.~0123456789", max_size=30)
queries = st.one_of(st.just(""), st.text(alphabet="abc=&%20", max_size=20).map(lambda q: "?" + q))


@given(
    method=st.sampled_from(["GET", "POST", "DELETE", "PATCH", "QUERY"]),
    host=st.sampled_from(["r.example", "R.Example:8443", "127.0.0.1:8080", "[::1]:443"]),
    path=paths,
    query=queries,
    created=st.integers(min_value=0, max_value=2**40),
    token=st.sampled_from([TOKEN, TOKEN + "x", "a.b.c"]),
)
def test_lean_path_equals_the_general_path(
    method: str, host: str, path: str, query: str, created: int, token: str
) -> None:
    def sign(**kwargs: object) -> dict[str, str] | type[Exception]:
        try:
            request = HttpRequest(method=method, url=f"https://{host}/{path}{query}")
            return sign_aauth_request(request, SIGNER, token=token, created=created, **kwargs)  # type: ignore[arg-type]
        except (AAuthError, ValueError) as exc:
            return type(exc)

    # Same fields, or the same kind of refusal.
    assert sign() == sign(covered=AAUTH_COMPONENTS)


def test_a_session_token_or_other_label_takes_the_general_path() -> None:
    request = HttpRequest(
        method="GET", url="https://r.example/x", headers={"Authorization": "AAuth abc"}
    )
    fields = sign_aauth_request(request, SIGNER, token=TOKEN, created=1)
    assert '"authorization"' in fields["Signature-Input"]
    other = sign_aauth_request(
        HttpRequest(method="GET", url="https://r.example/x"),
        SIGNER,
        token=TOKEN,
        created=1,
        label="agent",
    )
    assert other["Signature-Key"].startswith("agent=jwt;")


def test_memo_serves_only_its_own_token() -> None:
    first = serialize_jwt_scheme("sig", TOKEN)
    assert serialize_jwt_scheme("sig", TOKEN) == first == f'sig=jwt;jwt="{TOKEN}"'
    assert serialize_jwt_scheme("sig", TOKEN + "y") == f'sig=jwt;jwt="{TOKEN}y"'
    assert serialize_jwt_scheme("other", TOKEN) == f'other=jwt;jwt="{TOKEN}"'
    assert serialize_jwt_scheme("sig", TOKEN, cache=True).endswith(";cache")
    for i in range(600):  # past the bound: cleared, still correct
        assert serialize_jwt_scheme("sig", f"{TOKEN}{i}") == f'sig=jwt;jwt="{TOKEN}{i}"'
