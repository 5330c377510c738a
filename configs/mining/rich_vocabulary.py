# The default mining config with a richer vocabulary: construction equipment, scooters,
# strollers, animals, debris, emergency vehicles. Targets extended accordingly.
_base_ = ['./default.py']
concepts = dict(vocabulary=dict(
    concepts=['car', 'truck', 'construction_vehicle', 'bus', 'trailer', 'barrier', 'motorcycle', 'bicycle',
              'pedestrian', 'traffic_cone', 'traffic_light', 'traffic_sign', 'excavator', 'road_roller', 'crane',
              'forklift', 'cement_mixer', 'e_scooter', 'kick_scooter', 'stroller', 'wheelchair', 'skateboarder',
              'dog', 'deer', 'horse', 'road_debris', 'fallen_tree', 'tire_on_road', 'ambulance', 'police_car',
              'fire_truck', 'tram', 'animal_drawn_cart', 'police_officer', 'construction_worker', 'child'],
    target=['construction_vehicle', 'bicycle', 'motorcycle', 'trailer', 'truck', 'excavator', 'road_roller',
            'crane', 'forklift', 'cement_mixer', 'e_scooter', 'kick_scooter', 'stroller', 'wheelchair', 'dog',
            'deer', 'horse', 'road_debris', 'fallen_tree', 'tire_on_road', 'ambulance', 'police_car',
            'fire_truck', 'animal_drawn_cart', 'construction_worker', 'child']))
