"""Where the Cortex lives: its LanceDB URI and, for object storage, LanceDB's storage options.

Kept apart from loaders.cortex so that the command line can name a bad location without
importing LanceDB.
"""
from __future__ import annotations

import os
import re

from psimem.settings import Settings


def cortex_uri(explicit: str | None = None) -> str:
    return explicit or os.environ.get("PSIMEM_CORTEX_URI") or str(Settings.from_env().home / "cortex")


class CortexConfigError(ValueError):
    """The Cortex's location or storage settings are unusable; the message names the variable or setting."""


def storage_options(uri: str, env=None) -> dict[str, str] | None:
    """LanceDB storage options for a Cortex on S3 from the AWS SDKs' environment variables (None
    for a local directory or another scheme, whose variables LanceDB reads itself)."""
    env = os.environ if env is None else env
    m = re.match(r"^(s3a?)://([^/]*)", uri)
    if m is None:
        return None
    if not m.group(2):
        raise CortexConfigError(f"PSIMEM_CORTEX_URI: an S3 Cortex is s3://bucket/prefix, got {uri!r}")
    opts: dict[str, str] = {}
    for source in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"):
        value = env.get(source)
        if value:
            if not re.match(r"^https?://[^/\s]+(/\S*)?$", value):
                raise CortexConfigError(f"{source}: must be an http:// or https:// URL, got {value!r}")
            opts["aws_endpoint"] = value.rstrip("/")
            if value.startswith("http://"):
                opts["allow_http"] = "true"
            break
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if region:
        opts["aws_region"] = region
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        if env.get(key):
            opts[key.lower()] = env[key]
    return opts
