# The default mining config with a richer vocabulary: construction equipment, scooters,
# strollers, animals, debris, emergency vehicles. Targets extended accordingly.
_base_ = ['./default.py']
concepts = dict(vocabulary=dict(
    concepts=_base_.concepts.vocabulary.concepts + [
        'excavator', 'road_roller', 'crane', 'forklift', 'cement_mixer', 'e_scooter', 'kick_scooter', 'stroller',
        'wheelchair', 'skateboarder', 'dog', 'deer', 'horse', 'road_debris', 'fallen_tree', 'tire_on_road',
        'ambulance', 'police_car', 'fire_truck', 'tram', 'animal_drawn_cart', 'police_officer',
        'construction_worker', 'child'],
    target=_base_.concepts.vocabulary.target + [
        'excavator', 'road_roller', 'crane', 'forklift', 'cement_mixer', 'e_scooter', 'kick_scooter', 'stroller',
        'wheelchair', 'dog', 'deer', 'horse', 'road_debris', 'fallen_tree', 'tire_on_road', 'ambulance',
        'police_car', 'fire_truck', 'animal_drawn_cart', 'construction_worker', 'child']))
