# Mining with small models trained on a toy world of their own (the benchmark preset, another
# seed; see projects/conceptminer3d_toy/models/trained.py), captions off. Same code paths as
# default.py. Train (or reuse the cached) models and link them here first with
#   .venv/bin/python tools/train_toy_mining_models.py --out data/toy_models_trained
_base_ = ['./toy.py']
toy_models = 'data/toy_models_trained'
# A trained detector: the usual confidence threshold, and room for a busy street.
detector = dict(model=toy_models + '/yolov8n-toy-trained.pt', conf=0.25, imgsz=320, max_det=50, batch_size=8)
embedder = dict(model_name=toy_models + '/clip-toy-trained', pretrained=None)
# No captioner: the caption-selected crops are scored on their image embedding alone.
captioner = None
concepts = dict(weight_text=0.0)
# The detector names nuScenes classes, not COCO's: the classes that hint at targets.
caption_selection = dict(yolo_classes=['truck', 'bus', 'motorcycle', 'bicycle', 'construction_vehicle', 'trailer'])
