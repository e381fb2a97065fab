"""mie.losses"""
