# Mining with tiny random-initialised models (no downloads), for the toy world, the demo and
# the tests. Same code paths as default.py; build the models first with
#   .venv/bin/python tools/make_toy_models.py --out data/toy_models
_base_ = ['./default.py']
toy_models = 'data/toy_models'
frame_batch_size = 8
# The random YOLO's scores sit near its class prior (1e-4 .. 1e-3), hence the low conf.
detector = dict(model=toy_models + '/yolov8n-toy.pt', conf=1e-4, imgsz=320, max_det=8, batch_size=8)
embedder = dict(model_name=toy_models + '/clip-toy', pretrained=None)
captioner = dict(model=toy_models + '/qwen2-vl-toy', max_new_tokens=16)
