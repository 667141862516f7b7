"""kohya"""
