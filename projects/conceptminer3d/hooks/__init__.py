from .data_mining_hook import DataMiningHook

__all__ = ['DataMiningHook']
