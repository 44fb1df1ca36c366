"""Networks: deblurring backbones, latent encoders, prior fusion and the diffusion priors."""
