"""The RFC 9421 §2.5 signature base, shared by the signing and the verifying side.

One line ``"<identifier>": <value>`` per covered component (a repeated ``@query-param``
gives one line per occurrence), then ``"@signature-params": <value>``, joined with
``\\n`` and no trailing newline. The base is US-ASCII; a value with a line break or a
non-ASCII character cannot be signed (use ``;bs`` for such fields).

Errors are :class:`~aauth_core.httpsig.components.ComponentError` (a ``ValueError``):
the verifier maps them to ``invalid_signature``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from aauth_core.http import HttpRequest, HttpResponse
from aauth_core.httpsig.components import (
    DERIVED_VALUES,
    Component,
    ComponentError,
    MessageParts,
    component_values,
)
from aauth_core.httpsig.fields import CoveredComponents, SignatureInput, SignatureParams

__all__ = ["build_signature_base", "signature_base_for", "encode_base"]

Message = HttpRequest | HttpResponse


def build_signature_base(
    message: Message | MessageParts,
    covered: CoveredComponents,
    signature_params: str,
    *,
    request: HttpRequest | MessageParts | None = None,
) -> str:
    """The signature base for ``covered`` with the given ``@signature-params`` value.

    ``request`` is the request a response answers (for components with ``;req``).
    """
    parts = message if isinstance(message, MessageParts) else MessageParts(message)
    req_parts = (
        request if request is None or isinstance(request, MessageParts) else MessageParts(request)
    )
    lines = []
    derived = DERIVED_VALUES
    for component in covered.components:
        identifier = component.identifier
        if not component.params:  # the common case, without the generic dispatch
            name = component.name
            function = derived.get(name)
            value = function(parts) if function is not None else parts.field(name)
            if value is None:
                raise ComponentError(f"covered field {name!r} is absent")
            values: tuple[str, ...] = (value,)
        else:
            values = component_values(component, parts, req_parts)
        for value in values:
            if "\n" in value or "\r" in value:
                raise ComponentError(f"the value of {identifier} contains a line break")
            lines.append(f"{identifier}: {value}")
    lines.append(f'"@signature-params": {signature_params}')
    return "\n".join(lines)


def signature_base_for(
    message: Message,
    covered: CoveredComponents | Iterable[str | Component],
    params: SignatureParams | SignatureInput,
    *,
    request: HttpRequest | None = None,
    extra_headers: Mapping[str, str] | None = None,
) -> str:
    """The signature base for a message, covered components and parameters.

    Pass a parsed :class:`SignatureInput` as ``params`` to rebuild exactly its
    ``@signature-params`` value (its own covered components are used). ``extra_headers``
    are fields that count as present although they are not in ``message.headers``.
    """
    if isinstance(params, SignatureInput):
        cov = params.covered
        signature_params = params.signature_params
    else:
        cov = (
            covered
            if isinstance(covered, CoveredComponents)
            else CoveredComponents(components=covered)
        )
        signature_params = cov.serialize() + params.serialize()
    return build_signature_base(
        MessageParts(message, extra_headers), cov, signature_params, request=request
    )


def encode_base(base: str) -> bytes:
    """The bytes that are signed: the base as US-ASCII."""
    try:
        return base.encode("ascii")
    except UnicodeEncodeError:
        raise ComponentError("the signature base contains non-ASCII characters") from None
