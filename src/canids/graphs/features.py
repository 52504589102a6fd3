"""Names of the graph features, in tensor column order (no torch: the in-vehicle path reads them)."""

NODE_FEATURES = [
    "log_ia_mean",
    "log_ia_min",
    "log_ia_max",
    "ia_jitter_mean",
    "ia_jitter_max",
    "payload_change_rate",
    "byte_change_share",
    "payload_entropy",
    "byte_std",
    "new_id_share",
    "stalled_share",
]
EDGE_FEATURES = ["log_count", "log_dt_mean_ms", "log_dt_std_ms", "self_loop"]
GRAPH_FEATURES = ["max_count_share", "fast_repeat_share", "ia_jitter", "new_id_share", "rate_violation_share", "overdue_ids", "stalled_share"]
