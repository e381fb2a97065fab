"""mie.recipes"""
