"""A local imitation of OpenAI's image API (edits, generations, files, batches) and of Azure
OpenAI's image routes, so that editbatch can be used and tested with no key and no network:
real validation and error shapes, usage and prices from the public token arithmetic, a
visible deterministic edit that honours the mask, a rate limit, latency, seeded faults and
scripted outcomes.

Routes (the API's need a key: any non-empty one, or the one the simulator was started with)
    POST /v1/images/edits        multipart form, or a JSON body with images as data URLs or
                                 file ids (jsonbody.py; http(s) image URLs: 400, no network)
    POST /v1/images/generations  JSON body; usage has text input only
    POST /openai/deployments/{deployment}/images/{edits,generations}?api-version=...
    POST /openai/v1/images/{edits,generations}
                                 Azure's classic and v1 routes: key in `api-key` only
                                 (azure.py: deployments, 404s, content filter)
    POST /v1/files, GET /v1/files/{id}, GET /v1/files/{id}/content, DELETE /v1/files/{id}
                                 in-memory files (files.py)
    POST /v1/batches, GET /v1/batches[?limit=&after=], GET /v1/batches/{id},
    POST /v1/batches/{id}/cancel the Batch API (batches.py: life, files, expiry, cancel)
    GET  /_sim/stats             counters (no key): requests (image requests), by_status,
                                 by_outcome, in_flight, peak_in_flight, tokens, usd (all billed,
                                 batch lines at half price), usd_batch (their part),
                                 usd_delivered, ok_by_image (sha256 of the first image, or of
                                 a generation's prompt -> usable 200s), batches {by_status,
                                 lines, lines_by_status, lines_billed}, arrivals (seconds
                                 since start or reset, first 200,000)
    POST /_sim/reset             zeroes the counters
    POST /_sim/rate              {"rpm": N}: the rate limit from now on (0 lifts it), for a
                                 provider whose limit changes mid-run
    GET  /_sim/images/{name}     images of `url` answers
Every answer has an x-request-id header; those of the API also openai-processing-ms and,
when a rate limit is set, x-ratelimit-limit-requests, -remaining-requests (what is left of
the minute's allowance) and -reset-requests (until the bucket is full, e.g. "1s", "6m0s").

Order of decisions for one images request: key (401) -> Azure api-version and deployment
(404) -> body and checks (400, 413) -> rate limit (429 rate_limit_exceeded with
retry-after) -> outcome -> generation time -> answer. Requests that pass the rate limit are
numbered; the n-th one's fault and latency draws depend only on the seed and n. Generation
time (mean +- uniform jitter, or lognormal around a median with `SimConfig.latency_sigma`;
optionally x0.5/x1/x2 for low/medium/high quality) is spent
before every answer except the immediate ones: 429, quota, 401, 403, 404, 413, 422. Models
and sizes: models.py (gpt-image-2's free sizes and their area-scaled output tokens).

Outcomes (names of `SimConfig.faults` rates, `--faults NAME=RATE,...` and script tokens)
    ok          200 with data[{b64_json}] * n and usage
    429         429 requests / rate_limit_exceeded, retry-after-ms and retry-after headers
    quota       429 insufficient_quota / insufficient_quota
    500 503 504 server_error JSON;  502: an HTML page (text/html), as proxies send it
    moderation  400 image_generation_user_error / moderation_blocked, with
                error.moderation_details {moderation_stage, categories}; on Azure routes
                the content_filter answer
    content_filter  Azure's 400 {"error": {"code": "content_filter", "param": "prompt",
                "status": 400, "innererror": {"code": "ResponsibleAIPolicyViolation",
                "content_filter_result": {...}}}}
    reset       200 headers and half the body, then the connection closes
    stall       no answer until the client gives up (or the server shuts down)
    truncated   200 whose JSON body is cut in half (Content-Length matches the cut body)
    corrupt     200 whose b64_json decodes to bytes that are not an image
    url         200 with data[{url}] served by GET /_sim/images/{name}
    datauri     200 with b64_json prefixed by "data:image/png;base64," (or jpeg/webp)
    nousage     200 without usage, as some proxies answer
    chatusage   200 with usage {prompt_tokens, completion_tokens, total_tokens}
    emptyusage  200 with usage {}
    nodetails   200 with usage lacking input_tokens_details
    fewer       200 with n-1 images when n > 1, usage and billing for those returned
    repaint     200 whose image is repainted everywhere, mask or not
    401 403 404 408 409 413 422
                those statuses with the API's error body (404 is model_not_found)
In a batch line, the outcomes that need a connection or a proxy (reset, truncated, stall,
502) answer 500.

Scripts: a request may name its own outcomes, so a test gets exactly what it asserts on.
    header   x-sim-script: 429:0.05, 500, ok
    prompt   "Put it on marble [sim:429,500,ok]"   (works through any unmodified client, and
             in the body of a batch line)
A script is a comma-separated list of outcome names. `NAME:SECONDS` adds retry-after headers
(retry-after-ms exact, retry-after rounded up) on 429, 408, 409, 500, 502, 503 and 504; a
scripted 429 without seconds waits `SimConfig.fault_retry_after_s`. Each request consumes the
next outcome of its script key; after the last one every request gets ok. The key is the
prompt text (directive included), or the header value plus the prompt. The header wins over a
directive. An unknown token gets a 400 naming it. Scripts bypass the fault rates, not the
rate limit.

Options (`SimConfig`, `editbatch simulate` flags): rate limit, latency, faults, seed and key;
default_model (gpt-image-1; the API's own default is now gpt-image-1.5), azure_deployments,
gateway ("litellm": errors and headers as LiteLLM's proxy rewrites them, gateway.py),
outside_drift (edits also change kept pixels, render.py), batch_seconds (2),
batch_expire_after (None).
"""

from pipeline.simulator.config import SimConfig, parse_faults

__all__ = ["SimConfig", "make_app", "parse_faults", "running"]


def __getattr__(name: str):
    # The server (aiohttp.web and the app's modules) is imported when first asked for, so
    # `editbatch run` (whose parser names the simulate command's options) does not pay for it.
    if name == "make_app":
        from pipeline.simulator.app import make_app

        return make_app
    if name == "running":
        from pipeline.simulator.server import running

        return running
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
