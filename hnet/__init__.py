"""hnet: the Hyperware node-to-node network stack."""
