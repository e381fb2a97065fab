"""mie.tokenization"""
