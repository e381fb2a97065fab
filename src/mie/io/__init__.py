"""mie.io"""
