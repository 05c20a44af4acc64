"""User-facing reports: text tables, per-layer inspection, evaluation and verification."""

from microquant.report.inspect import layer_rows
from microquant.report.table import format_kv, format_table

__all__ = ["format_kv", "format_table", "layer_rows"]
