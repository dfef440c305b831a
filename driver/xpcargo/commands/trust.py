"""`xpcargo trust`: the user's consent to what the checkout's own settings reach outside it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from xpcargo.cargo.args import parse_cargo_args
from xpcargo.commands import Answer
from xpcargo.config import trust as trusting
from xpcargo.pipeline import plan

if TYPE_CHECKING:
    from xpcargo.context import Context


def trust(context: Context, *, revoke: bool, show: bool, manifest_path: str | None) -> Answer:
    """Consent (or with ``revoke`` withdraw it, with ``show`` only look): what the settings reach, a line each, and
    whether the checkout is trusted now."""
    project = context.project(parse_cargo_args(["--manifest-path", manifest_path] if manifest_path else []))
    boundary = plan.trust_boundary(context.host, project, context.project_config(project.workspace_root))
    if revoke:
        withdrawn = trusting.revoke(boundary)
        return Answer(statuses=(("Revoked", f"{'the' if withdrawn else 'no'} consent for {boundary.checkout}"),))
    status = trusting.status(boundary) if show else trusting.consent(boundary)
    if not boundary.asks:
        verdict = ("Trusted", f"nothing to consent to: the settings of {boundary.checkout} reach nothing outside it")
    elif status.consented:
        verdict = ("Trusted", f"{boundary.checkout}, these settings only (recorded in {boundary.store})")
    else:
        changed = "; they changed since you consented" if status.changed else ""
        verdict = ("Untrusted", f"{boundary.checkout}{changed}: `xpcargo trust` consents")
    return Answer(lines=tuple(status.lines()), statuses=(verdict,))
