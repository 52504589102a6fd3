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
#: The window features that are violations: zero on a healthy bus, whatever the vehicle. The VGAE
#: reconstructs only these. ``max_count_share`` (the largest ID's share of a window's frames) is a
#: property of the vehicle's schedule: on set_01's unseen vehicle its reconstruction error alone
#: put the median normal window at 28x the training vehicle's (every other feature's error stayed
#: within 1.2x), past the VGAE threshold on half of that vehicle's normal windows. A flood, what it
#: would show, already shows as fast repeats and, for an ID with a period, broken rates.
VIOLATION_GRAPH_FEATURES = [f for f in GRAPH_FEATURES if f != "max_count_share"]
