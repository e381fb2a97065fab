"""mie.optimization"""
