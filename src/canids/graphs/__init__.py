"""Windows of frames become graphs: nodes are CAN IDs, edges consecutive-frame transitions."""
