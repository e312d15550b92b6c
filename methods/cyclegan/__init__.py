"""CycleGAN (Zhu et al., ICCV 2017) as a face-anonymization baseline: landmarks (or CIAGAN's
landmarks ⊕ masked face) -> face, the paper's Table 4 baseline. Networks: `model`; the
registered methods `cyclegan` and `cyclegan-masked`: `anonymizer`."""
