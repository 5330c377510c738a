from setuptools import find_packages, setup

setup(
    name='conceptminer3d',
    version='0.1.0',
    description='Mine rare and safety-critical objects from driving-scene camera images '
    'into smaller, better MMDetection3D training sets',
    python_requires='>=3.10',
    package_dir={'': 'projects'},
    packages=find_packages('projects'),
)
