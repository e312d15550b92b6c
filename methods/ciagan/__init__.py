"""CIAGAN (Maximov, Elezi, Leal-Taixé, CVPR 2020): conditional identity anonymization GAN.

Modules: `preprocess` (the official crop, landmark drawing and mask), `model` (generator,
critic, identity network), `data` (training data, cached), `train` (`anonbench train ciagan`),
`checkpoint`, `anonymizer` (the registered `ciagan` method), `video` (images, folders and
videos with tracking and landmark smoothing). Importing this package imports nothing heavy.
"""
