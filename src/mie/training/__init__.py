"""mie.training"""
