"""mie.evaluation"""
