"""Torch / PyG modules: VGAE autoencoder, GAT classifier, DQN fusion agent."""
