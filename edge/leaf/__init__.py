"""leaf"""
