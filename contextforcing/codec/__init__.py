"""Codecs between pixels and latents: the interface, the Wan VAE and the world codec."""
