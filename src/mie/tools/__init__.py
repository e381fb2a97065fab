"""mie.tools"""
