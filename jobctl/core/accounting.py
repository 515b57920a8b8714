"""The fields of an attempt's usage (SPEC section 11), shared by the backends that measure it and
the views that show it."""

from __future__ import annotations

USAGE_FIELDS = ("wall_seconds", "cpu_seconds", "max_rss_bytes", "gpu_seconds", "gpu_util_avg", "gpu_memory_max_bytes")
