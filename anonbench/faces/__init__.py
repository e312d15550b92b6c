"""Face analysis: detectors (dlib, RetinaFace, MTCNN, CenterFace, MediaPipe), landmarkers (dlib
68 points, MediaPipe 468), masks, identity embedders."""
