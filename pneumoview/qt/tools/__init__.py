"""Reading tools on the image view: measurements, annotations, orientation, their panel.

Each module takes the view (``RadiographView``) as a parameter and draws into its
``image_space`` group (one unit per image pixel, rotated and flipped with the view); the maths
live in :mod:`pneumoview.core.reading`.
"""
