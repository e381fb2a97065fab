"""mie.models"""
