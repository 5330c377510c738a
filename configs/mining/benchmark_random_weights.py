# The default architectures (YOLOv8l, open_clip ViT-B-32) with random weights, for timing
# runs without downloads: compute depends on the architecture, not the weights. Random
# weights detect nothing at conf 0.3, so detections are fixed at max_det per image with a
# near-zero threshold: say so when you report numbers from this config.
_base_ = ['./default.py']
detector = dict(model='yolov8l.yaml', conf=1e-9, max_det=20)
embedder = dict(pretrained=None)
captioner = dict(model='data/toy_models/qwen2-vl-toy', max_new_tokens=16)  # the 2B VLM is not timed here
subsets = None
