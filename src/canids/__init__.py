"""canids: training pipeline for CAN-bus intrusion detectors (VGAE -> curriculum GAT -> DQN fusion)."""

__version__ = "0.1.0"
