"""mie.safety"""
