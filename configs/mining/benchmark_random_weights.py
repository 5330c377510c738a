# The default architectures (YOLOv8l, open_clip ViT-B-32) with random weights, for timing
# runs without downloads: compute depends on the architecture, not the weights. Random
# weights detect nothing at conf 0.3, so detections are fixed at max_det per image with a
# near-zero threshold: say so when you report numbers from this config.
_base_ = ['./default.py']
detector = dict(model='yolov8l.yaml', conf=1e-9, max_det=20)
embedder = dict(pretrained=None)
# The toy captioner; to time the real architecture, write Qwen2-VL-2B at random weights with
# tools/make_toy_models.py --qwen2-vl-2b DIR and set captioner.model=DIR.
captioner = dict(model='data/toy_models/qwen2-vl-toy', max_new_tokens=16)
subsets = None
