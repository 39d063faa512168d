"""The Wan2.1 video diffusion transformer: config, layers, attention layouts and weight loading."""
