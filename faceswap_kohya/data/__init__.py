"""Photos → the run folder's Kohya dataset: checks, crops, masks, captions, Kohya folders, class images, reports."""
