"""Generation: the synthetic images of every generative arm.

  registry      the generator families by name (FAMILIES, light: no torch)
  families      a family from the registry, its checks, keys and loading; family: the interface
  unet          diffusers UNet2DModel in the DDPM wrapper (the default family)
  edm           Karras et al. 2022: preconditioned UNet, log-normal σ, Heun sampler
  dit           Peebles & Xie 2023: a pixel-space DiT in the DDPM wrapper
  generator     the config and the training loop every family shares; checkpoint: its files
  gengroup      many small generators trained as one batched computation
  distributed   one generator on several processes (torchrun + DDP); ranks: which one am I
  sampling      per-sample seeding, the DDPM samplers, sample files
  synthetic     the study's synthetic sets, keyed and cached in the run directory
  openset       the open-set arm from a pretrained text-to-image pipeline
  provided      synthetic sets or generators made outside the study
  provided_entries  their config section and `ARM[:N]=SOURCE` parsing (light, no torch)
  levers        family / guidance / sampler-steps / filter variants as extra arms; filtering
"""
