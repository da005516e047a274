"""Generation: the synthetic images of every generative arm.

  generator     class-conditional diffusion: backbones, training loop, checkpoints
  gengroup      many small generators trained as one batched computation
  distributed   one generator on several processes (torchrun + DDP); ranks: which one am I
  sampling      few-step samplers, per-image seeding, sample files
  synthetic     the study's synthetic sets, keyed and cached in the run directory
  openset       the open-set arm from a pretrained text-to-image pipeline
  provided      synthetic sets or generators made outside the study
  levers        guidance / sampler-steps / filter variants as extra arms; filtering: keep-top-q
"""
