package riverinbox_test

func receiverMain() int { return 2 }
