"""The shipped demo model, models/fashion-vmoe: training, statistics, the
expert heatmap, the model card, sample images and the demo itself."""
