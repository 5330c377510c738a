# Mining with the real models (the research prototype's defaults, all 6 cameras).
# Models are given by name or local path; a name resolves in the models dir first (models_dir =
# ..., --models-dir or $CONCEPTMINER3D_MODELS_DIR, else ./models): docs/mining.md, "Models offline".
cameras = ['CAM_FRONT', 'CAM_FRONT_RIGHT', 'CAM_FRONT_LEFT', 'CAM_BACK', 'CAM_BACK_LEFT', 'CAM_BACK_RIGHT']
frames = dict(type='InfoPickleFrames', cameras=cameras,
              data_prefix={cam: f'samples/{cam}' for cam in cameras})
frame_batch_size = None  # images handed to the detector at a time (and per cache write); None: its batch size, >= 16
decode_workers = None  # threads decoding JPEGs ahead of the models; None: half the cores, 1 to 8
num_threads = None  # torch intra-op threads; None = all cores (restored after YOLO lowers it)

# Every model runs on device='auto' (the GPU when there is one, else the CPU) with dtype='auto'
# (half precision on a GPU) and a batch size chosen for that device: set device, dtype or
# batch_size in a component to override (projects/conceptminer3d/mining/models/devices.py).
detector = dict(type='YoloDetector', model='yolov8l.pt', conf=0.3, iou=0.45, max_det=100, imgsz=640)
crops = dict(
    padding=0.05,  # of the box size, per side
    min_size=8,  # pixels; smaller crops are counted in the manifest and not embedded
    yolo_classes=None)  # early class filter (list of YOLO class names); None keeps all
embedder = dict(type='OpenClipEmbedder', model_name='ViT-B-32', pretrained='laion2b_s34b_b79k')
outliers = dict(
    contamination=0.1,  # in (0, 0.5]
    combine='union',  # or 'vote' (majority of the methods)
    per_class=False,  # fit one model per YOLO class instead of one for all crops
    min_crops=10,
    methods=[
        dict(name='iforest', type='IsolationForestOutliers', n_estimators=100, random_state=42),
        dict(name='lof', type='LocalOutlierFactorOutliers', n_neighbors=20),
        dict(name='knn', type='KnnDistanceOutliers', n_neighbors=10),
    ])
# Which crops get a caption: the outliers, plus YOLO (COCO) classes that hint at targets.
caption_selection = dict(outliers=True, yolo_classes=['truck', 'bus', 'motorcycle', 'bicycle', 'train'])
captioner = dict(type='Qwen2VLCaptioner', model='Qwen/Qwen2-VL-2B-Instruct', max_new_tokens=64)
# captioner = dict(type='BlipCaptioner', model='Salesforce/blip-image-captioning-large')
# captioner = None  # captions off: no captioner model needed; crops are scored on their image alone
# The vocabulary is yours to change (see rich_vocabulary.py): these lists are written here
# and nowhere else. `concepts` starts with the ten nuScenes detection classes. Each concept
# is encoded with ConceptVocabulary's prompt_template (mining/stages/concepts.py); add
# prompt_template=... here to change it.
concepts = dict(
    vocabulary=dict(
        concepts=['car', 'truck', 'construction_vehicle', 'bus', 'trailer', 'barrier', 'motorcycle', 'bicycle',
                  'pedestrian', 'traffic_cone', 'traffic_light', 'traffic_sign'],
        target=['construction_vehicle', 'bicycle', 'motorcycle', 'trailer', 'truck'],
        common=['car', 'pedestrian', 'traffic_light', 'traffic_sign']),
    weight_text='adaptive',  # or a fixed number in [0, 1]
    top_k=5)
# Last stage: subsets of the mined train pickle, under WORK_DIR/subsets/. Add SubsetSpec
# fields here (target_ratio, random_ratio, unit, seed, selection, concept_quota, diversity) to change them; their defaults, the
# "Random 10% + Target 10%" split, live in projects/conceptminer3d/subsets/selection.py.
subsets = dict(dbinfos_file='nuscenes_dbinfos_train.pkl')  # relative to --data-root
