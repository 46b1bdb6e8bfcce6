"""Measurements on masks: Dice and volumes, lesion metrics, fusion of the experts' masks, the longitudinal comparison
and its flag.
"""
