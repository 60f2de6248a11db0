"""The ``aauth`` command: keys, tokens, signing and verifying AAuth requests.

Bad input prints one line on stderr and exits 2; a request that does not verify prints
its ``Signature-Error`` and exits 1. Passphrases are read from an environment variable
named on the command line, never from the command line itself.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import importlib.util
import json
import os
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from aauth_backends.errors import BackendError
from aauth_backends.stores import FileKeyStore
from aauth_backends.uris import Pkcs11Uri, open_signer, parse_key_ref
from aauth_core.algorithms import Alg, parse_alg
from aauth_core.errors import AAuthError, SignatureFailure
from aauth_core.headers.signature_error import signature_error_headers
from aauth_core.http import HttpRequest
from aauth_core.identifiers import AgentId, ServerId
from aauth_core.jwk import PublicJwk
from aauth_core.requests import RequestVerifier, sign_aauth_request
from aauth_core.signer import Signer
from aauth_core.tokens import (
    DWK_ACCESS,
    DWK_AGENT,
    DWK_PERSON,
    DWK_RESOURCE,
    AgentTokenClaims,
    AuthTokenClaims,
    Confirmation,
    PersonTokenClaims,
    ResourceTokenClaims,
    StaticKeyResolver,
    TokenClaims,
    TokenPolicy,
    TokenType,
    inspect_token,
    mint_token,
)

__all__ = ["main"]

_ALL_DWKS = (DWK_AGENT, DWK_PERSON, DWK_ACCESS, DWK_RESOURCE)


class UsageError(Exception):
    """Bad command-line input: one line on stderr, exit 2."""


# --- helpers -------------------------------------------------------------------------


def _passphrase(args: argparse.Namespace) -> str | None:
    name = getattr(args, "passphrase_env", None)
    if not name:
        return None
    value = os.environ.get(name)
    if value is None:
        raise UsageError(f"environment variable {name} (the passphrase) is not set")
    return value


def _key_ref(text: str) -> str:
    return (
        text
        if text.startswith(("file:", "software:", "pkcs11:"))
        else f"file:{os.path.abspath(text)}"
    )


def _signer(ref: str, args: argparse.Namespace) -> Signer:
    return open_signer(_key_ref(ref), passphrase=_passphrase(args))


#: The largest file the command reads: tokens, JWKS and request files are small, and a
#: body for a signed request is capped too (a path like /dev/zero must not hang us).
MAX_FILE_BYTES = 16 * 1024 * 1024


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as handle:
        data = handle.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise UsageError(f"{path} is larger than {MAX_FILE_BYTES} bytes")
    return data


def _read_text(path: str) -> str:
    try:
        return _read_bytes(path).decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not UTF-8 text") from None


def _text_arg(value: str) -> str:
    """``@file`` reads a file, ``-`` reads stdin, anything else is the value itself."""
    if value == "-":
        data = sys.stdin.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise UsageError(f"standard input is larger than {MAX_FILE_BYTES} bytes")
        return data.strip()
    if value.startswith("@"):
        return _read_text(value[1:]).strip()
    return value


def _read_json(path: str) -> Any:
    try:
        return json.loads(_read_text(path))
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path} is not JSON ({exc.msg} at line {exc.lineno})") from None


def _now(args: argparse.Namespace) -> int:
    return int(args.now) if args.now is not None else int(time.time())


def _method(value: str) -> str:
    """The method in upper case; ``HttpRequest`` refuses one that is not a token."""
    return value.upper()


def _headers(values: Sequence[str]) -> list[tuple[str, str]]:
    """``Name: value`` pairs; ``Headers`` refuses bad names and CR, LF or NUL in values."""
    pairs = []
    for value in values:
        name, sep, rest = value.partition(":")
        if not sep:
            raise UsageError(f"header {value[:60]!r} is not 'Name: value'")
        pairs.append((name.strip(), rest.strip()))
    return pairs


def _body(value: str | None) -> bytes:
    if value is None:
        return b""
    if value.startswith("@"):
        return _read_bytes(value[1:])
    return value.encode("utf-8")


def _request_to_json(request: HttpRequest) -> dict[str, Any]:
    out: dict[str, Any] = {
        "method": request.method,
        "url": request.url,
        "headers": [list(p) for p in request.headers.pairs],
    }
    try:
        out["body"] = request.body.decode("utf-8")
    except UnicodeDecodeError:
        out["body_base64"] = base64.b64encode(request.body).decode("ascii")
    return out


def _request_from_json(data: Any) -> HttpRequest:
    if not isinstance(data, dict):
        raise UsageError("the request file holds a JSON object with method, url, headers, body")
    headers = data.get("headers", [])
    if isinstance(headers, dict):
        headers = list(headers.items())
    try:
        pairs = [(str(k), str(v)) for k, v in headers]
    except (TypeError, ValueError):
        raise UsageError("request headers are [[name, value], ...] or {name: value}") from None
    if "body_base64" in data:
        try:
            body = base64.b64decode(str(data["body_base64"]), validate=True)
        except (binascii.Error, ValueError):
            raise UsageError("the request's body_base64 is not base64") from None
    else:
        body = str(data.get("body", "")).encode("utf-8")
    method, url = data.get("method"), data.get("url")
    if not isinstance(method, str) or not isinstance(url, str):
        raise UsageError("the request needs a method and a url")
    return HttpRequest(method=method, url=url, headers=pairs, body=body)


def _origin(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    return f"{parts.scheme.lower()}://{host}"


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


# --- commands ------------------------------------------------------------------------


def _pkcs11_store(token_uri: str) -> Any:
    """A PKCS#11 key store for the token a ``pkcs11:`` URI names (imported lazily: the
    backend is the optional ``aauth[pkcs11]`` extra)."""
    uri = parse_key_ref(token_uri)
    if not isinstance(uri, Pkcs11Uri):
        raise UsageError("a PKCS#11 token is named by a pkcs11: URI")
    if importlib.util.find_spec("pkcs11") is None:
        raise UsageError("the PKCS#11 backend needs python-pkcs11: pip install 'aauth[pkcs11]'")
    from aauth_backends.pkcs11 import Pkcs11KeyStore

    return Pkcs11KeyStore.from_uri(uri)


def _pkcs11_ref(key_ref: str, token_uri: str) -> str:
    """``key_ref`` (from the store) with the token URI's query (module-path, pin-source;
    never pin-value), so that it can be passed to ``--key`` as it is."""
    key = parse_key_ref(key_ref)
    token = parse_key_ref(token_uri)
    if not (isinstance(key, Pkcs11Uri) and isinstance(token, Pkcs11Uri)):
        raise UsageError("PKCS#11 keys and tokens are named by pkcs11: URIs")
    return Pkcs11Uri(attributes=key.attributes, query=token.query).to_uri()


def cmd_keygen(args: argparse.Namespace) -> int:
    if args.backend == "pkcs11":
        if not args.token or not args.name or args.out:
            raise UsageError("--backend pkcs11 takes --token pkcs11:… and --name (not --out)")
        with _pkcs11_store(args.token) as p11:
            ref = _pkcs11_ref(p11.generate(parse_alg(args.alg), args.name), args.token)
            signer = p11.get_signer(ref)
            return _report_key(args, ref, signer)
    if not args.out or args.token or args.name:
        raise UsageError("--backend file takes --out KEY.pem (not --token/--name)")
    out = Path(args.out)
    if out.suffix != ".pem":
        raise UsageError("--out names a .pem file")
    store = FileKeyStore(out.parent or Path("."), passphrase=_passphrase(args), engine=args.engine)
    ref = store.generate(parse_alg(args.alg), out.stem, engine=args.engine)
    return _report_key(args, ref, store.get_signer(ref))


def cmd_keys_list(args: argparse.Namespace) -> int:
    if args.store.startswith("pkcs11:"):
        with _pkcs11_store(args.store) as p11:
            infos = [(_pkcs11_ref(i.ref, args.store), i) for i in p11.list_keys()]
    else:
        directory = Path(args.store)
        if not directory.is_dir():
            raise UsageError(f"--store {args.store!r} is neither a pkcs11: URI nor a directory")
        infos = [(i.ref, i) for i in FileKeyStore(directory).list_keys()]
    if args.json:
        _print_json(
            [
                {
                    "key": ref,
                    "name": i.name,
                    "alg": i.alg.value,
                    "kid": i.key_id,
                    "engine": i.engine,
                }
                for ref, i in infos
            ]
        )
        return 0
    for ref, info in infos:
        print(f"{info.alg.value:8} {info.key_id}  {info.name}")
        print(f"         {ref}")
    if not infos:
        print("no keys", file=sys.stderr)
    return 0


def _report_key(args: argparse.Namespace, ref: str, signer: Signer) -> int:
    jwk = signer.public_jwk()
    if args.json:
        _print_json({"key": ref, "kid": signer.key_id, "alg": jwk.alg.value, "jwk": jwk.to_dict()})
    else:
        print(f"key      {ref}")
        print(f"alg      {jwk.alg.value}")
        print(f"kid      {signer.key_id}  (RFC 7638 thumbprint)")
    return 0


def cmd_jwk(args: argparse.Namespace) -> int:
    signer = _signer(args.key, args)
    jwk = signer.public_jwk()
    if args.jwks:
        _print_json({"keys": [jwk.to_dict()]})
        return 0
    _print_json(
        {
            "jwk": jwk.to_dict(),
            "thumbprint": jwk.thumbprint("sha256"),
            "thumbprint_sha512": jwk.thumbprint("sha512"),
        }
    )
    return 0


def _cnf(args: argparse.Namespace) -> Confirmation:
    if args.cnf_key:
        return Confirmation(jwk=_signer(args.cnf_key, args).public_jwk())
    if args.cnf_jwk:
        return Confirmation(jwk=PublicJwk.from_dict(_read_json(args.cnf_jwk)))
    raise UsageError("this token type needs --cnf-key or --cnf-jwk (the agent's key)")


def _need(value: str | None, flag: str) -> str:
    if not value:
        raise UsageError(f"this token type needs {flag}")
    return value


def _claims(args: argparse.Namespace, now: int) -> TokenClaims:
    common: dict[str, Any] = {
        "iss": str(ServerId.parse(args.iss)),
        "jti": args.jti or uuid.uuid4().hex,
        "iat": now,
        "exp": now + args.lifetime,
        "extra": dict(_claim_pairs(args.claim)),
    }
    kind = args.type
    if kind == "agent":
        parent = AgentId.parse(args.parent_agent) if args.parent_agent else None
        return AgentTokenClaims(
            dwk=DWK_AGENT,
            sub=AgentId.parse(_need(args.sub, "--sub")),
            cnf=_cnf(args),
            ps=args.ps,
            parent_agent=parent,
            **common,
        )
    if kind == "person":
        return PersonTokenClaims(
            dwk=DWK_PERSON,
            aud=_need(args.aud, "--aud"),
            sub=_need(args.sub, "--sub"),
            cnf=_cnf(args),
            mission_s256=args.mission_s256,
            tenant=args.tenant,
            **common,
        )
    if kind == "auth":
        return AuthTokenClaims(
            dwk=args.dwk or DWK_PERSON,
            aud=_need(args.aud, "--aud"),
            ps=args.ps or common["iss"],
            sub=_need(args.sub, "--sub"),
            cnf=_cnf(args),
            scope=args.scope,
            mission_s256=args.mission_s256,
            tenant=args.tenant,
            **common,
        )
    return ResourceTokenClaims(
        dwk=DWK_RESOURCE,
        aud=_need(args.aud, "--aud"),
        ps=_need(args.ps, "--ps"),
        sub=_need(args.sub, "--sub"),
        presented_jti=_need(args.presented_jti, "--presented-jti"),
        agent_jkt=_cnf(args).jwk.thumbprint(),  # type: ignore[union-attr]
        scope=args.scope,
        mission_s256=args.mission_s256,
        tenant=args.tenant,
        **common,
    )


def _claim_pairs(values: Sequence[str]) -> list[tuple[str, Any]]:
    out = []
    for value in values:
        name, sep, raw = value.partition("=")
        if not sep or not name:
            raise UsageError(f"--claim {value[:40]!r} is not name=json-value")
        try:
            out.append((name, json.loads(raw)))
        except json.JSONDecodeError:
            out.append((name, raw))
    return out


def cmd_token_mint(args: argparse.Namespace) -> int:
    signer = _signer(args.key, args)
    claims = _claims(args, _now(args))
    payload = claims.to_payload()
    for name, value in _claim_pairs(args.claim):
        if payload.get(name) != value:
            raise UsageError(f"--claim {name} clashes with a claim the command sets")
    # Refuse what no verifier would accept (e.g. a --ps or --aud that is not a URL).
    type(claims).from_payload(payload)
    print(mint_token(claims, signer, allow_long_lifetime=args.allow_long_lifetime))
    return 0


def cmd_token_inspect(args: argparse.Namespace) -> int:
    token = _text_arg(args.token)
    unverified = inspect_token(token)
    if args.json:
        _print_json({"verified": False, "header": unverified.header, "payload": unverified.payload})
        return 0
    print("UNVERIFIED token (decoded only; nothing here is trusted)")
    print("header  " + json.dumps(unverified.header, indent=2).replace("\n", "\n        "))
    print("payload " + json.dumps(unverified.payload, indent=2).replace("\n", "\n        "))
    return 0


def cmd_sign(args: argparse.Namespace) -> int:
    signer = _signer(args.key, args)
    token = _text_arg(args.token)
    inspect_token(token)  # a compact JWS at least; the verifier checks the rest
    request = HttpRequest(
        method=_method(args.method),
        url=args.url,
        headers=_headers(args.header),
        body=_body(args.body),
    )
    added = sign_aauth_request(
        request,
        signer,
        token=token,
        created=_now(args),
        label=args.label,
        cover_body=args.cover_body,
    )
    signed = HttpRequest(
        method=request.method,
        url=request.url,
        headers=request.headers.with_fields(added),
        body=request.body,
    )
    if args.out:
        Path(args.out).write_text(
            json.dumps(_request_to_json(signed), indent=2) + "\n", encoding="utf-8"
        )
    if args.json:
        _print_json({"added_headers": added, "request": _request_to_json(signed)})
    else:
        for name, value in added.items():
            print(f"{name}: {value}")
    return 0


def _resolver(values: Sequence[str]) -> StaticKeyResolver:
    keys: dict[tuple[str, str], tuple[PublicJwk, ...]] = {}
    for value in values:
        issuer, sep, path = value.partition("=")
        if not sep:
            raise UsageError(f"--jwks {value[:60]!r} is not ISSUER=FILE")
        issuer = str(ServerId.parse(issuer))
        data = _read_json(path)
        members = data.get("keys") if isinstance(data, dict) else None
        if not isinstance(members, list):
            raise UsageError(f'{path} is not a JWKS ({{"keys": [...]}})')
        jwks = tuple(PublicJwk.from_dict(m) for m in members)
        for dwk in _ALL_DWKS:
            keys[(issuer, dwk)] = keys.get((issuer, dwk), ()) + jwks
    return StaticKeyResolver(keys)


def cmd_verify(args: argparse.Namespace) -> int:
    if args.request:
        request = _request_from_json(_read_json(args.request))
    else:
        if not args.method or not args.url:
            raise UsageError("give --request FILE, or --method and --url with -H/--body")
        request = HttpRequest(
            method=_method(args.method),
            url=args.url,
            headers=_headers(args.header),
            body=_body(args.body),
        )
    if args.window < 0:
        raise UsageError("--window is a number of seconds (0 or more)")
    audience = args.audience or _origin(request.url)
    verifier = RequestVerifier(
        keys=_resolver(args.jwks),
        audience=audience,
        accepted_types=frozenset({TokenType.AGENT, TokenType.PERSON, TokenType.AUTH}),
        window=args.window,
        require_body_coverage=args.require_body_coverage,
        policy=TokenPolicy(max_iat_skew=args.window),
    )
    now = _now(args)
    try:
        result = verifier.verify(request, now=now)
    except SignatureFailure as exc:
        headers = signature_error_headers(exc)
        if args.json:
            _print_json(
                {
                    "verdict": "rejected",
                    "status": exc.status,
                    "error": exc.code,
                    "detail": exc.detail,
                    "headers": headers,
                }
            )
        else:
            print(f"verdict  REJECTED ({exc.status})")
            print(f"reason   {exc.detail}")
            for name, value in headers.items():
                print(f"{name}: {value}")
        return 1
    token = result.token
    claims = token.claims.to_payload()
    report = {
        "verdict": "valid",
        "token": {
            "typ": token.type.value,
            "alg": token.alg.value,
            "kid": token.kid,
            "claims": token.claims.to_payload(),
        },
        "agent": None if result.agent is None else str(result.agent),
        "person": None if result.person is None else list(result.person),
        "key_thumbprint": result.key_thumbprint,
        "covered": result.signature.covered.serialize(),
        "created": result.signature.created,
        "signature_base": result.signature.base,
    }
    if args.json:
        _print_json(report)
    else:
        print(f"token    {token.type.value} (alg {token.alg.value}, kid {token.kid})")
        print("claims   " + json.dumps(claims, indent=2).replace("\n", "\n         "))
        print("signature base:")
        for line in result.signature.base.split("\n"):
            print(f"    {line}")
        print(f"verdict  VALID: agent {report['agent'] or '-'}, key {result.key_thumbprint}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Run a reference server from its config file (imported here: the server extra)."""
    from aauth_flows.io.servers.config import serve

    return serve(args.role, args.config)


# --- parser --------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """Usage errors in the command's own one-line form (subcommand parsers inherit it)."""

    def error(self, message: str) -> NoReturn:
        _fail(f"{message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="aauth", description="AAuth keys, tokens and signed requests")
    parser.add_argument("-v", "--verbose", action="store_true", help="log key events on stderr")
    sub = parser.add_subparsers(dest="command", required=True)

    def passphrase(p: argparse.ArgumentParser) -> None:
        p.add_argument("--passphrase-env", metavar="VAR", help="read the key passphrase from $VAR")

    p = sub.add_parser("keygen", help="generate a key pair (a PKCS#8 PEM file, or on a token)")
    p.add_argument("--backend", default="file", choices=["file", "pkcs11"])
    p.add_argument("--alg", default="Ed25519", choices=[a.value for a in Alg])
    p.add_argument("--engine", default="cryptography", choices=["cryptography", "sodium"])
    p.add_argument("--out", help="file: the .pem file to create (never overwritten)")
    p.add_argument(
        "--token",
        metavar="PKCS11_URI",
        help="pkcs11: the token, e.g. 'pkcs11:token=aauth?module-path=…&pin-source=file:…'",
    )
    p.add_argument("--name", help="pkcs11: the key's label")
    p.add_argument("--json", action="store_true")
    passphrase(p)
    p.set_defaults(func=cmd_keygen)

    keys = sub.add_parser("keys", help="list keys").add_subparsers(dest="keys", required=True)
    p = keys.add_parser("list", help="list the keys of a token or a key directory")
    p.add_argument(
        "--store", required=True, help="a pkcs11: token URI, or a directory of .pem keys"
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_keys_list)

    p = sub.add_parser("jwk", help="print a key's public JWK and RFC 7638 thumbprints")
    p.add_argument("--key", required=True, help="a key reference (file:…, or a .pem path)")
    p.add_argument("--jwks", action="store_true", help="print a JWKS document instead")
    passphrase(p)
    p.set_defaults(func=cmd_jwk)

    token = sub.add_parser("token", help="mint or inspect AAuth tokens").add_subparsers(
        dest="token_command", required=True
    )
    p = token.add_parser("mint", help="mint an AAuth token")
    p.add_argument("--type", required=True, choices=["agent", "person", "resource", "auth"])
    p.add_argument("--key", required=True, help="the issuer's signing key")
    p.add_argument("--iss", required=True, help="the issuer's server identifier")
    p.add_argument("--sub")
    p.add_argument("--aud")
    p.add_argument("--ps")
    p.add_argument(
        "--dwk", help="auth tokens: aauth-person.json (PS, default) or aauth-access.json (AS)"
    )
    p.add_argument("--parent-agent")
    p.add_argument("--scope")
    p.add_argument("--presented-jti")
    p.add_argument("--mission-s256")
    p.add_argument("--tenant")
    p.add_argument("--cnf-key", help="the agent key the token binds to (a key reference)")
    p.add_argument("--cnf-jwk", help="the agent's public JWK (a JSON file)")
    p.add_argument("--lifetime", type=int, default=3600, help="seconds (default 3600)")
    p.add_argument(
        "--allow-long-lifetime",
        action="store_true",
        help="agent > 24 h or resource > 5 min (never person/auth > 1 h)",
    )
    p.add_argument("--jti")
    p.add_argument("--claim", action="append", default=[], metavar="NAME=JSON")
    p.add_argument("--now", type=int, help="Unix time to issue at (default: the clock)")
    passphrase(p)
    p.set_defaults(func=cmd_token_mint)

    p = token.add_parser("inspect", help="decode a token WITHOUT verifying it")
    p.add_argument("token", help="the token, @file, or - for stdin")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_token_inspect)

    def request_args(p: argparse.ArgumentParser, required: bool) -> None:
        p.add_argument("--method", required=required)
        p.add_argument("--url", required=required)
        p.add_argument("-H", "--header", action="append", default=[], metavar="'Name: value'")
        p.add_argument("--body", help="the body text, or @file")

    p = sub.add_parser("sign", help="sign an HTTP request (prints the signature headers)")
    p.add_argument("--key", required=True, help="the agent's key")
    p.add_argument("--token", required=True, help="the token to present: the JWT, @file or -")
    request_args(p, True)
    p.add_argument("--label", default="sig")
    p.add_argument(
        "--cover-body", action="store_true", help="cover content-digest and content-type"
    )
    p.add_argument("--now", type=int, help="the created time (default: the clock)")
    p.add_argument("--out", help="also write the signed request as JSON to this file")
    p.add_argument("--json", action="store_true")
    passphrase(p)
    p.set_defaults(func=cmd_sign)

    p = sub.add_parser("verify", help="verify a signed request (exit 0 valid, 1 rejected)")
    p.add_argument("--request", help="a signed request as JSON (from aauth sign --out)")
    request_args(p, False)
    p.add_argument(
        "--jwks",
        action="append",
        default=[],
        required=True,
        metavar="ISSUER=FILE",
        help="trust this JWKS for this issuer (repeatable)",
    )
    p.add_argument("--audience", help="this server's identifier (default: the URL's origin)")
    p.add_argument("--window", type=int, default=60, help="signature window in seconds")
    p.add_argument("--require-body-coverage", action="store_true")
    p.add_argument("--now", type=int, help="the verifier's clock (default: the clock)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("serve", help="run a reference server (AP, PS, AS or resource)")
    p.add_argument("role", choices=["ap", "ps", "as", "resource"])
    p.add_argument("--config", required=True, help="the server's TOML config file")
    p.set_defaults(func=cmd_serve)
    return parser


def _fail(message: str) -> NoReturn:
    # One line, whatever the message holds (file names and values may carry newlines).
    line = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in message)
    print(f"aauth: error: {line}", file=sys.stderr)
    raise SystemExit(2)


def _configure_logging(verbose: bool) -> None:
    """The command is an application, so it configures structlog: events go to stderr
    (stdout carries keys, tokens and JSON), warnings only unless ``--verbose``."""
    import logging

    import structlog

    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.INFO if verbose else logging.WARNING
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose)
    try:
        return int(args.func(args))
    except UsageError as exc:
        _fail(str(exc))
    except (AAuthError, BackendError) as exc:
        _fail(f"{exc.code}: {exc.detail}")
    except (ValueError, TypeError) as exc:
        _fail(str(exc) or type(exc).__name__)
    except OSError as exc:
        _fail(f"{exc.strerror or type(exc).__name__}: {exc.filename or ''}".rstrip(": "))
    except Exception as exc:  # never a traceback on the command line
        _fail(f"unexpected {type(exc).__name__}: {exc}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
