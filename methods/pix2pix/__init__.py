"""pix2pix (Isola et al., CVPR 2017) as a face-anonymization baseline: landmarks (or CIAGAN's
landmarks ⊕ masked face) -> face, the paper's Table 4 baseline. Networks: `model`; the
registered methods `pix2pix` and `pix2pix-masked`: `anonymizer`."""
