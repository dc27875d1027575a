"""How Azure OpenAI differs from OpenAI on the image routes: the key in an `api-key` header,
the api-version query of the classic route, deployments instead of models, and Azure's own
error shapes (401, 404 for a missing api-version, 404 DeploymentNotFound, 400 content_filter).
The `api-key` check itself is in auth.py.

Routes: classic `POST /openai/deployments/{deployment}/images/{edits,generations}
?api-version=...` (the body's `model` is ignored, as Azure does) and v1 `POST
/openai/v1/images/{edits,generations}` (the body's `model` names the deployment). The
simulator does not take Entra ID tokens: `Authorization: Bearer` without `api-key` is a 401.
A deployment serves: its model in `SimConfig.azure_deployments` when that is set (any other
name is DeploymentNotFound); else itself when it is a known model name; else gpt-image-1.5.
"""

from __future__ import annotations

from collections.abc import Mapping

from pipeline.simulator.answer import Answer
from pipeline.simulator.models import API_DEFAULT_MODEL, facts_of

DEFAULT_DEPLOYMENT_MODEL = API_DEFAULT_MODEL
# The per-category verdicts of a filtered request (the simulator flags "violence").
CATEGORIES = ("hate", "self_harm", "sexual", "violence")
FLAGGED = "violence"


def azure_error(http_status: int, code: str, message: str, **extra: object) -> Answer:
    """Azure's own error shape: `{"error": {"code", "message", ...}}`, no `type`."""
    return Answer(status=http_status, body={"error": {"code": code, "message": message, **extra}})


def missing_api_version() -> Answer:
    """What Azure answers on a classic route without `?api-version=`."""
    return azure_error(404, "404", "Resource not found")


def deployment_model(name: str, deployments: Mapping[str, str]) -> str | None:
    """The model a deployment serves, or None when it does not exist (see the docstring)."""
    if deployments:
        return deployments.get(name)
    return name if facts_of(name) is not None else DEFAULT_DEPLOYMENT_MODEL


def deployment_not_found(name: str) -> Answer:
    return azure_error(
        404,
        "DeploymentNotFound",
        f"The API deployment {name!r} for this resource does not exist. If you created the "
        "deployment within the last 5 minutes, please wait a moment and try again.",
    )


def content_filter(request_id: str) -> Answer:
    """Azure's content filter refusing a prompt: the moderation class on Azure routes."""
    verdicts = {
        name: {"filtered": name == FLAGGED, "severity": "high" if name == FLAGGED else "safe"}
        for name in CATEGORIES
    }
    return azure_error(
        400,
        "content_filter",
        "The response was filtered due to the prompt triggering Azure OpenAI's content "
        "management policy. Please modify your prompt and retry. To learn more about our "
        f"content filtering policies please read our documentation: "
        f"https://go.microsoft.com/fwlink/?linkid=2198766 (request {request_id})",
        param="prompt",
        status=400,
        innererror={
            "code": "ResponsibleAIPolicyViolation",
            "content_filter_result": verdicts,
        },
    )
