"""The manifest's shape (CONTRACT section 1) as frozen pydantic models: what each key may hold.

Strict types (a quoted "2" is not a number, 1001 is not an id: quote it), unknown keys refused.
Rules that need the files or several items at once live in expand.py and validate.py; the
JSON Schema that `editbatch schema` prints is generated from these classes.
"""

from __future__ import annotations

import re
import string
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PlainValidator,
    Tag,
    WithJsonSchema,
    field_validator,
)
from pydantic_core import PydanticCustomError

from pipeline.core.envvars import template_problem
from pipeline.core.plan import AUTHS, BODIES, PROVIDERS
from pipeline.outputs.files import TEMPLATE_FIELDS

GLOB_FIELDS = ("stem", "name", "parent")
MAX_IMAGES = 16
# The client sends these itself; an `extra:` field may not shadow them.
RESERVED_FIELDS = frozenset({"prompt", "image", "image[]", "images", "mask"})
# Fields that would change the answer's shape into something editbatch does not read.
REFUSED_FIELDS = {
    "stream": "streamed answers (events, partial images) are not supported: each answer is "
    "read whole; remove extra.stream",
    "partial_images": "partial images come only with streaming, which is not supported; "
    "remove extra.partial_images",
}
# Headers the client sets itself (endpoint.headers may not): the body's, the connection's.
CLIENT_HEADERS = frozenset({"content-type", "content-length", "host", "transfer-encoding"})
HEADER_NAME = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")

Text = Annotated[str, Field(min_length=1)]
ParamValue = str | int | float | bool


def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _scalar(value: Any) -> ParamValue:
    if isinstance(value, str | int | float | bool):
        return value
    raise PydanticCustomError("scalar", "expected a string, number or true/false")


ImagePaths = Annotated[
    list[Text],
    BeforeValidator(_one_or_many),
    Field(min_length=1, max_length=MAX_IMAGES),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "minLength": 1},
                {
                    "type": "array",
                    "items": {"type": "string", "minLength": 1},
                    "minItems": 1,
                    "maxItems": MAX_IMAGES,
                },
            ],
            "description": f"An image path, or a list of up to {MAX_IMAGES} (the first sets "
            "the size the mask must have). Relative to the manifest's folder.",
        }
    ),
]
Scalar = Annotated[
    ParamValue, PlainValidator(_scalar), WithJsonSchema({"type": ["string", "number", "boolean"]})
]


class Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class Params(Section):
    """Request parameters; null on an item removes the default."""

    model: Text | None = Field(None, description="Any model name; none is built in.")
    size: Text | None = Field(None, description="Passed through, e.g. 1024x1024 or auto.")
    quality: Text | None = Field(None, description="low, medium, high or auto (passed through).")
    n: int | None = Field(None, ge=1, description="Images per request.")
    background: Text | None = Field(None, description="transparent, opaque or auto.")
    output_format: Annotated[str, Field(pattern=r"^[A-Za-z0-9]{1,10}$")] | None = Field(
        None, description="png, jpeg or webp; also the output files' extension."
    )
    output_compression: int | None = Field(None, ge=0, le=100, description="0-100, jpeg/webp.")
    input_fidelity: Text | None = Field(None, description="low or high.")
    user: Text | None = Field(None, description="An end-user id passed to the API.")
    moderation: Text | None = Field(
        None, description="auto or low: generations and the JSON edit body (endpoint.body: json)."
    )
    extra: dict[Text, Scalar] | None = Field(
        None, description="Form fields this version does not know, sent as they are."
    )

    @field_validator("extra")
    @classmethod
    def _extra_fields_are_new(cls, extra: dict[str, ParamValue] | None):
        for key in extra or {}:
            if key in REFUSED_FIELDS:
                raise PydanticCustomError(
                    "refused", "extra.{key} is refused", {"key": key, "fix": REFUSED_FIELDS[key]}
                )
            if key in Params.model_fields or key in RESERVED_FIELDS:
                raise PydanticCustomError(
                    "shadowed",
                    "extra.{key} is not an extra field",
                    {
                        "key": key,
                        "fix": f"set {key}: directly"
                        if key in Params.model_fields
                        else f"{key} comes from the item; remove it from extra",
                    },
                )
        return extra


class Defaults(Params):
    prompt: Text | None = Field(None, description="The prompt of items that have none.")


class ImageItem(Params):
    id: Text | None = Field(
        None, description="Unique; default: the first image's file stem (a generation needs one)."
    )
    image: ImagePaths | None = Field(
        None, description="Without image the item is a generation (/images/generations)."
    )
    mask: Text | None = Field(None, description="PNG with alpha, or black/white (white = edit).")
    prompt: Text | None = Field(None, description="Default: defaults.prompt.")


class GlobItem(Params):
    glob: Text = Field(description="One item per matching file, in sorted order (** recurses).")
    id: Text | None = Field(None, description="Template; default {stem}. {stem} {name} {parent}.")
    mask: Text | None = Field(None, description="Path template, e.g. masks/{stem}.png.")
    prompt: Text | None = Field(None, description="May use {stem}, {name} and {parent}.")

    @field_validator("id", "mask")
    @classmethod
    def _known_placeholders(cls, template: str | None):
        for field in _PLACEHOLDER.findall(template or ""):
            if field not in GLOB_FIELDS:
                raise PydanticCustomError(
                    "placeholder",
                    "{field} is not a glob placeholder",
                    {
                        "field": f"{{{field}}}",
                        "fix": "use {stem}, {name} (with extension) or {parent}",
                    },
                )
        return template


class FromItem(Params):
    """One item per row of an export; its columns fill the item keys and the {templates}."""

    model_config = ConfigDict(populate_by_name=False)

    source: Text = Field(
        alias="from",
        description="A .csv, .jsonl or .json (a list of objects) file: one item per row. "
        "Columns named like item keys set them; every column is a {template} field.",
    )
    id: Text | None = Field(None, description="Template, e.g. {sku}; default: the id column.")
    image: ImagePaths | None = Field(None, description="Template(s); default: the image column.")
    mask: Text | None = Field(None, description="Template, e.g. masks/{sku}.png.")
    prompt: Text | None = Field(None, description="Template, e.g. Put the {title} on marble.")


def _item_kind(value: Any) -> str:
    if isinstance(value, dict):
        if "from" in value:
            return "from"
        if "glob" in value:
            return "glob"
    return "image"


ItemSpec = Annotated[
    Annotated[ImageItem, Tag("image")]
    | Annotated[GlobItem, Tag("glob")]
    | Annotated[FromItem, Tag("from")],
    Discriminator(_item_kind),
]


class Endpoint(Section):
    provider: Literal[tuple(PROVIDERS)] = Field(  # type: ignore[valid-type]
        "openai", description="openai (OpenAI or any compatible server) or azure."
    )
    base_url: Annotated[str, Field(pattern=r"^https?://\S+$")] | None = Field(
        None,
        description="Default: $OPENAI_BASE_URL, else https://api.openai.com/v1 (openai); "
        "$AZURE_OPENAI_ENDPOINT (azure; its /openai/v1 without a deployment).",
    )
    api_key_env: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] | None = Field(
        None,
        description="The NAME of the variable holding the key, never the key. Default: "
        "OPENAI_API_KEY (openai), AZURE_OPENAI_API_KEY (azure).",
    )
    deployment: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")] | None = Field(
        None, description="azure: the classic route's deployment (then api_version is required)."
    )
    api_version: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")] | None = Field(
        None, description="azure classic route: e.g. 2025-04-01-preview."
    )
    auth: Literal[AUTHS] | None = Field(  # type: ignore[valid-type]
        None, description="bearer (default for openai), api-key (default for azure) or none."
    )
    headers: dict[
        Annotated[str, Field(pattern=HEADER_NAME)],
        Annotated[str, Field(pattern=r"^[^\r\n]*$")],
    ] = Field(
        default_factory=dict,
        description="Extra headers on every request; ${NAME} parts are read from the "
        "environment at run time and never recorded.",
    )
    body: Literal[BODIES] = Field(  # type: ignore[valid-type]
        "multipart", description="The edits body: multipart, or json (images as data URLs)."
    )

    @field_validator("headers")
    @classmethod
    def _headers_are_extra(cls, headers: dict[str, str]) -> dict[str, str]:
        for name, value in headers.items():
            if name.lower() in CLIENT_HEADERS:
                raise PydanticCustomError(
                    "header",
                    "headers.{name} is set by the client",
                    {"name": name, "fix": "remove it; the client sets it for each request"},
                )
            problem = template_problem(value)
            if problem:
                raise PydanticCustomError(
                    "header",
                    "headers.{name}: {problem}",
                    {"name": name, "problem": problem, "fix": "write ${NAME}, e.g. ${GATEWAY_KEY}"},
                )
        return headers


class Limits(Section):
    concurrency: int = Field(4, ge=1, description="Requests in flight at most.")
    requests_per_minute: float = Field(0, ge=0, description="Client-side pacing; 0 = none.")
    max_attempts: int = Field(5, ge=1, description="Per item, the first try included.")
    timeout_s: float = Field(300, gt=0, description="Seconds per HTTP attempt.")
    max_outage_s: float = Field(
        1800,
        ge=0,
        description="Nothing but failures for this long: stop, exit 75 (resumable); 0 = wait "
        "forever.",
    )
    max_image_mb: float = Field(
        64,
        gt=0,
        description="The largest image (MB, decoded) an answer may hold; an answer's body is "
        "capped at n x this as base64, a url download at this.",
    )


class Budget(Section):
    run_usd: float | None = Field(None, ge=0, description="New spend of one run, at most.")
    total_usd: float | None = Field(None, ge=0, description="Spend of all runs, at most.")


class Price(Section):
    text_input: float = Field(ge=0)
    image_input: float = Field(ge=0)
    image_output: float = Field(ge=0)
    text_output: float | None = Field(None, ge=0)
    batch_discount: float | None = Field(
        None, gt=0, le=1, description="The Batch API's price as a share of this one (0.5)."
    )


class Batch(Section):
    completion_window: Literal["24h"] = Field(
        "24h", description="How long the provider may take; the Batch API offers 24h."
    )
    poll_s: float = Field(60, gt=0, description="`run --wait`: seconds between polls.")


class Output(Section):
    dir: Text | None = Field(None, description="Default: <manifest stem>-out beside it.")
    name: Text = Field("{id}", description="File stem template: {id}, {stem}, {model}.")
    mask_mode: Literal["guide", "strict"] = Field(
        "guide",
        description="guide: the model's image as returned; strict: outside the mask, the "
        "input's own pixels (the output has the input's size).",
    )
    feather_px: float = Field(
        2, ge=0, le=64, description="strict: blend width inside the mask's edge, in pixels."
    )
    size: Literal["api", "input"] = Field(
        "api",
        description="api: the size the API returned; input: the first input's width x height "
        "(scaled to cover, then centre-cropped).",
    )
    max_drift: float | None = Field(
        None,
        ge=0,
        le=1,
        description="An answer whose drift (0..1, change outside the mask) is above this is "
        "retried; it counts against max_attempts.",
    )

    @field_validator("name")
    @classmethod
    def _known_fields(cls, template: str) -> str:
        fix = "use {id}, {stem} or {model}; write a literal brace as {{ or }}"
        try:
            fields = [(f, c) for _, f, _, c in string.Formatter().parse(template) if f is not None]
        except ValueError as exc:
            context = {"problem": str(exc), "fix": fix}
            raise PydanticCustomError("template", "{problem}", context) from None
        for field, conversion in fields:
            if field not in TEMPLATE_FIELDS or conversion:
                raise PydanticCustomError(
                    "template",
                    "{field} is not a field of output names",
                    {"field": f"{{{field}}}", "fix": fix},
                )
        return template


class Manifest(Section):
    """An editbatch job manifest."""

    model_config = ConfigDict(title="editbatch manifest")

    version: Literal[1] = Field(description="The manifest format; this editbatch reads 1.")
    name: Text | None = Field(None, description="Default: the manifest's file stem.")
    endpoint: Endpoint = Endpoint()
    defaults: Defaults = Defaults()
    limits: Limits = Limits()
    budget: Budget = Budget()
    mode: Literal["interactive", "batch"] = Field(
        "interactive", description="batch: through the Batch API at its price (`run --batch`)."
    )
    batch: Batch = Batch()
    pricing: dict[Text, Price] = Field(
        default_factory=dict, description="USD per 1M tokens by model; over the built-in table."
    )
    output: Output = Output()
    ledger: Text | None = Field(None, description="Default: <output.dir>/ledger.jsonl.")
    cache: Text | None = Field(
        None,
        description="A folder of answers shared by jobs and runs (~ allowed): an item whose "
        "request is in it is not sent. Default: off.",
    )
    items: list[ItemSpec]


SECTIONS: dict[str, type[Section]] = {
    "endpoint": Endpoint,
    "defaults": Defaults,
    "limits": Limits,
    "budget": Budget,
    "pricing": Price,
    "batch": Batch,
    "output": Output,
}
