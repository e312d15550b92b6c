"""Face analysis: detectors, landmarks, masks, identity embedders."""
