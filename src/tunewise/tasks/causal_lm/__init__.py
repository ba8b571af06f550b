"""Supervised fine-tuning of causal LMs (task `causal_lm`): chat data, masking, packing, LoRA,
text metrics with paired CIs, forgetting and canary memorisation tests.

    tunewise run configs/cucom_sft.yaml
"""
