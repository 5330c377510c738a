"""The reference `tools/benchmark_mining.py` compares the whole `tools/mine.py` process with:
a fresh process that only runs the two models on the same images, as a user's minimal script
would. It imports torch, ultralytics and open_clip (never the plugin), builds both models,
decodes every image, detects with YOLO, crops every box with PIL and embeds the crops with
open_clip; it writes nothing. What `tools/mine.py` takes beyond this is what the pipeline
costs.

    python tools/benchmark_bare_models.py IMAGES.txt --yolo yolov8l.yaml --clip ViT-B-32 \
        [--clip-pretrained TAG] [--conf 0.3] [--max-det 100] [--imgsz 640] [--yolo-batch 1] \
        [--clip-batch 64] [--threads N] [--device cpu]

IMAGES.txt holds one image path per line. Prints JSON: images, crops, seconds (in-process,
from the first import to the last embedding) and model_seconds (the model calls alone, with
the crops' PIL preprocessing: slower than the pipeline's tensor crops).
"""

import time

START = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402

import numpy as np  # noqa: E402
import open_clip  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from ultralytics import YOLO  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('images', help='text file, one image path per line')
    p.add_argument('--yolo', required=True)
    p.add_argument('--clip', required=True)
    p.add_argument('--clip-pretrained')
    p.add_argument('--conf', type=float, required=True)
    p.add_argument('--max-det', type=int, required=True)
    p.add_argument('--imgsz', type=int, required=True)
    p.add_argument('--yolo-batch', type=int, required=True)
    p.add_argument('--clip-batch', type=int, required=True)
    p.add_argument('--threads', type=int, required=True)
    p.add_argument('--device', default='cpu')
    args = p.parse_args()
    with open(args.images) as f:
        paths = [line.strip() for line in f if line.strip()]

    detector = YOLO(args.yolo, task='detect')
    clip, _, preprocess = open_clip.create_model_and_transforms(
        args.clip, pretrained=args.clip_pretrained, device=args.device
    )
    clip.eval()
    predict = dict(
        conf=args.conf, max_det=args.max_det, imgsz=args.imgsz, device=args.device, verbose=False, batch=args.yolo_batch
    )

    # ultralytics lowers torch's threads when its predictor is set up: set it up on a tiny
    # image first, then restore them, so every real image runs with the pipeline's threads.
    detector.predict([np.zeros((32, 32, 3), np.uint8)], **dict(predict, imgsz=32))
    torch.set_num_threads(args.threads)

    crops = []
    n_crops = 0
    model_seconds = 0.0  # the model calls alone, cutting and resizing the crops (PIL) included

    def embed(batch):
        nonlocal model_seconds
        start = time.perf_counter()
        with torch.inference_mode():
            clip.encode_image(torch.stack([preprocess(c) for c in batch]).to(args.device))
        model_seconds += time.perf_counter() - start

    for start in range(0, len(paths), args.yolo_batch):
        images = [Image.open(path).convert('RGB') for path in paths[start : start + args.yolo_batch]]
        images_bgr = [np.asarray(image)[..., ::-1].copy() for image in images]
        predict_start = time.perf_counter()
        results = detector.predict(images_bgr, **predict)
        model_seconds += time.perf_counter() - predict_start
        for image, result in zip(images, results):
            crops.extend(image.crop(tuple(box)) for box in result.boxes.xyxy.cpu().numpy().round().tolist())
        while len(crops) >= args.clip_batch:
            embed(crops[: args.clip_batch])
            n_crops += args.clip_batch
            del crops[: args.clip_batch]
    if crops:
        embed(crops)
        n_crops += len(crops)
    seconds = time.perf_counter() - START
    counts = dict(images=len(paths), crops=n_crops)
    print(json.dumps(dict(counts, seconds=round(seconds, 3), model_seconds=round(model_seconds, 3))))


if __name__ == '__main__':
    main()
