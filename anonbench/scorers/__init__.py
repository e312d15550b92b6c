"""Scorers: the metric families protocols compose (contract: anonbench.scorers.base).

- leaks (faces_missed), detection (detection_rate), retrieval (recall_at_1 of fixed
  recognizers and of trained attackers), adaptive (an attacker refitted per method),
  reversal (a wrapper: any embedding scorer on restored outputs), utility (landmarks),
  realism (FID, KID), similarity (face-box SSIM, PSNR), verification and face_kept (LFW),
  landmark_attack (identity from landmarks), target_retrieval (the faceswap check);
- passes: one evaluation pass over the union of the scorers' needs (reference boxes frozen);
- composed: the flow of a protocol composed of scorers over the identity split (celeba,
  landmark-attack);
- tables: the per-item CSVs behind a method's results.

Adding a metric: a Scorer subclass in one file here (needs, prepare, score -> MetricResult,
per_item), its MetricSpec in anonbench.metrics.catalog, its unit test on a synthetic Pass, and
the scorer in the protocol's list (see similarity.py and its option in protocols/celeba.py;
README, "Your metric").
"""
