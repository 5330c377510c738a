from .rare_concept_sampler import RareConceptSampler, sample_weights_from_concepts

__all__ = ['RareConceptSampler', 'sample_weights_from_concepts']
